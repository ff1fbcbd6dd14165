-- Identity resolution across sources: one row per identity-graph node (an amoCRM contact, a
-- Bitrix24 contact, a Bitrix24 lead without a contact, a file order) with the customer it
-- belongs to. Nodes are the same person
-- when they share a normalised phone or e-mail, or (file orders of one files account) the
-- shop's own customer_id, directly or through a chain (A shares a phone with B, B an e-mail
-- with C), in any CRM or file: the connected components of the "shares a contact point" graph. customer_id = 'c_' + the first 16 hex digits of md5(smallest node id
-- of the component): stable for the same data on every backend.
with recursive

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

points as (

    select node_id, point_kind, value_normalized
    from {{ ref('int_contact_points__unioned') }}
    union
    -- the shop's customer key links the orders of one files account only (the key is
    -- namespaced by it); it is not a contact point, so audiences never see it
    select
        {{ node_id('files', 'account', 'order_record_id') }},
        'files_customer_id',
        account || ':' || shop_customer_id
    from {{ ref('stg_files__orders') }}
    where shop_customer_id is not null

),

edges as (

    select distinct
        a.node_id,
        b.node_id as linked_node_id
    from points as a
    inner join points as b
        on a.point_kind = b.point_kind
        and a.value_normalized = b.value_normalized
        and a.node_id <> b.node_id

),

-- transitive closure; UNION (not UNION ALL) stops once no new pair appears
reachable (node_id, reachable_node_id) as (

    select node_id, node_id from nodes
    union
    select
        reachable.node_id,
        edges.linked_node_id
    from reachable
    inner join edges
        on reachable.reachable_node_id = edges.node_id

),

components as (

    select
        node_id,
        min(reachable_node_id) as root_node_id
    from reachable
    group by node_id

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
