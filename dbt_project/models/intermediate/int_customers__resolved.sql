-- Identity resolution across sources: one row per identity-graph node (an amoCRM contact, a
-- Bitrix24 contact, a Bitrix24 lead without a contact, a file order) with the customer it
-- belongs to. Nodes are the same person when they share a normalised phone or e-mail, or (file
-- orders of one files account) the shop's own customer_id, directly or through a chain (A
-- shares a phone with B, B an e-mail with C), in any CRM or file: the connected components of
-- the "shares an identifier" graph. The components are computed before dbt by union-find
-- (warehouse/identity.py, linear in the records; source raw.identity_clusters), which also
-- leaves out identifiers on more than VORONKA_IDENTITY_MAX_SHARED people (switchboards,
-- placeholders: raw.identity_shared_identifiers). customer_id = 'c_' + the first 16 hex
-- digits of md5(smallest node id of the component): stable for the same data on every backend.
with

nodes as (

    select {{ node_id('amocrm', 'account', 'contact_id') }} as node_id
    from {{ ref('stg_amocrm__contacts') }}
    union
    select {{ node_id('amocrm', 'account', 'main_contact_id') }}
    from {{ ref('stg_amocrm__customers') }}
    where main_contact_id is not null
    union
    select {{ node_id('bitrix24', 'account', 'contact_id') }}
    from {{ ref('stg_bitrix24__contacts') }}
    union
    select {{ node_id('bitrix24_lead', 'account', 'lead_id') }}
    from {{ ref('stg_bitrix24__leads') }}
    where contact_id is null
    union
    select {{ node_id('files', 'account', 'order_record_id') }}
    from {{ ref('stg_files__orders') }}
    union
    -- a lead may point at a contact that was never landed; it is still someone
    select contact_node_id
    from {{ ref('int_crm__leads_unioned') }}
    where contact_node_id is not null

),

clusters as (

    select node_id, root_node_id
    from {{ source('voronka_identity', 'identity_clusters') }}

),

-- a node in no cluster of two or more is a customer of its own
components as (

    select
        nodes.node_id,
        coalesce(clusters.root_node_id, nodes.node_id) as root_node_id
    from nodes
    left join clusters
        on nodes.node_id = clusters.node_id

),

final as (

    select
        node_id,
        {{ dbt.split_part('node_id', "':'", 1) }} as node_source,
        'c_' || substr(md5(root_node_id), 1, 16) as customer_id,
        root_node_id,
        count(*) over (partition by root_node_id) as nodes_in_customer
    from components

)

select * from final
