-- Identity resolution: one row per amoCRM contact with the customer it belongs to.
-- Contacts are the same person when they share a normalised phone or e-mail, directly or
-- through a chain (A shares a phone with B, B an e-mail with C): the connected components
-- of the "shares a contact point" graph. customer_id = 'c_' || smallest contact id.
with recursive

contacts as (

    select account, contact_id from {{ ref('stg_amocrm__contacts') }}
    union
    -- a lead may point at a contact that was never landed; it is still someone
    select account, main_contact_id
    from {{ ref('stg_amocrm__leads') }}
    where main_contact_id is not null

),

points as (

    select distinct account, contact_id, point_kind, value_normalized
    from {{ ref('stg_amocrm__contact_points') }}
    where is_valid

),

edges as (

    select distinct
        a.account,
        a.contact_id,
        b.contact_id as linked_contact_id
    from points as a
    inner join points as b
        on a.account = b.account
        and a.point_kind = b.point_kind
        and a.value_normalized = b.value_normalized
        and a.contact_id <> b.contact_id

),

-- transitive closure; UNION (not UNION ALL) stops once no new pair appears
reachable (account, contact_id, reachable_contact_id) as (

    select account, contact_id, contact_id from contacts
    union
    select
        reachable.account,
        reachable.contact_id,
        edges.linked_contact_id
    from reachable
    inner join edges
        on reachable.account = edges.account
        and reachable.reachable_contact_id = edges.contact_id

),

components as (

    select
        account,
        contact_id,
        min(reachable_contact_id) as root_contact_id
    from reachable
    group by account, contact_id

),

final as (

    select
        account,
        contact_id,
        'c_' || cast(root_contact_id as varchar) as customer_id,
        count(*) over (partition by account, root_contact_id) as contacts_in_customer
    from components

)

select * from final
